"""Who may do what in the clinic's own tools, and the record of what people did with patients' details."""
