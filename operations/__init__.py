"""Operating the CRM: the conditions ops are alerted about, measured from what the system recorded."""
