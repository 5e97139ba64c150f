# ruff: noqa: E501  (each translated sentence is kept whole on one line, easier to review)
"""The answers sms-triage sends, in the languages patients reply in (`Classification.language`). A reply in
one of these languages is answered in English and then in theirs (`messages.bilingual`); a language without a
template here is answered in English only. STOP and START stay in English: carriers act on those words.

Fields: {clinic}, {what} and {when} (as in English), {call} (the language's "call us on" sentence, or nothing).
"""

from __future__ import annotations

TRANSLATIONS: dict[str, dict[str, str]] = {
    "zh-Hans": {
        "call": "您也可以致电 {phone}。",
        "confirmed": "谢谢！您在{when}的{what}预约已确认。到时见。- {clinic}",
        "cancel": "感谢告知。{clinic}的工作人员会尽快联系您取消预约。{call}",
        "reschedule": "感谢告知。{clinic}的工作人员会尽快联系您另约时间。{call}",
        "passed_to_staff": "感谢您的信息。{clinic}的工作人员会尽快回复您。",
        "help": "{clinic}预约短信。回复 Y 确认、R 改期、N 取消预约。{call}回复 STOP 退订。",
        "opt_out": "{clinic}：您已退订，我们不会再给您发短信。回复 START 可重新订阅。",
        "opt_out_unsure": "{clinic}：我们理解您希望不再收到短信，已为您停止发送。如果这不是您的意思，请回复 START 恢复。",
        "opt_in": "{clinic}：您已重新订阅我们的短信。随时回复 STOP 可退订。",
    },
    "zh-Hant": {
        "call": "您亦可致電 {phone}。",
        "confirmed": "謝謝！您在{when}的{what}預約已確認。到時見。- {clinic}",
        "cancel": "感謝告知。{clinic}的職員會盡快聯絡您取消預約。{call}",
        "reschedule": "感謝告知。{clinic}的職員會盡快聯絡您另約時間。{call}",
        "passed_to_staff": "感謝您的訊息。{clinic}的職員會盡快回覆您。",
        "help": "{clinic}預約短訊。回覆 Y 確認、R 改期、N 取消預約。{call}回覆 STOP 退訂。",
        "opt_out": "{clinic}：您已退訂，我們不會再向您發送短訊。回覆 START 可重新訂閱。",
        "opt_out_unsure": "{clinic}：我們理解您希望不再收到短訊，已為您停止發送。如果這不是您的意思，請回覆 START 恢復。",
        "opt_in": "{clinic}：您已重新訂閱我們的短訊。隨時回覆 STOP 可退訂。",
    },
    "vi": {
        "call": "Bạn cũng có thể gọi {phone}.",
        "confirmed": "Cảm ơn! Lịch hẹn {what} của bạn vào {when} đã được xác nhận. Hẹn gặp bạn. - {clinic}",
        "cancel": "Cảm ơn bạn đã báo. Nhân viên {clinic} sẽ sớm liên hệ để hủy lịch hẹn của bạn. {call}",
        "reschedule": "Cảm ơn bạn đã báo. Nhân viên {clinic} sẽ sớm liên hệ để đặt lịch mới cho bạn. {call}",
        "passed_to_staff": "Cảm ơn tin nhắn của bạn. Nhân viên {clinic} sẽ liên hệ lại với bạn.",
        "help": (
            "Tin nhắn lịch hẹn của {clinic}. Trả lời Y để xác nhận, R để đổi lịch hoặc N để hủy. {call} "
            "Trả lời STOP để ngừng nhận tin."
        ),
        "opt_out": (
            "{clinic}: bạn đã hủy đăng ký và sẽ không nhận tin nhắn từ chúng tôi nữa. Trả lời START để đăng ký lại."
        ),
        "opt_out_unsure": (
            "{clinic}: chúng tôi hiểu bạn muốn ngừng nhận tin nhắn nên đã ngừng gửi. Nếu bạn không có ý đó, "
            "hãy trả lời START để nhận lại."
        ),
        "opt_in": "{clinic}: bạn đã đăng ký nhận tin nhắn lại. Trả lời STOP bất cứ lúc nào để ngừng.",
    },
    "ar": {
        "call": "أو اتصل بنا على {phone}.",
        "confirmed": "شكراً! تم تأكيد موعد {what} الخاص بك في {when}. نراك قريباً. - {clinic}",
        "cancel": "شكراً لإبلاغنا. سيتواصل معك فريق {clinic} قريباً لإلغاء موعدك. {call}",
        "reschedule": "شكراً لإبلاغنا. سيتواصل معك فريق {clinic} قريباً لتحديد موعد جديد. {call}",
        "passed_to_staff": "شكراً لرسالتك. سيتواصل معك أحد أعضاء فريق {clinic}.",
        "help": "رسائل مواعيد {clinic}. أرسل Y للتأكيد أو R لتغيير الموعد أو N للإلغاء. {call} أرسل STOP لإيقاف الرسائل.",
        "opt_out": "{clinic}: تم إلغاء اشتراكك ولن تصلك رسائل منا بعد الآن. أرسل START لإعادة الاشتراك.",
        "opt_out_unsure": (
            "{clinic}: فهمنا من رسالتك أنك لا تريد رسائل بعد الآن، لذا أوقفناها. إذا لم تقصد ذلك، أرسل START لاستئنافها."
        ),
        "opt_in": "{clinic}: تمت إعادة اشتراكك في رسائلنا. أرسل STOP في أي وقت لإيقافها.",
    },
    "el": {
        "call": "Ή καλέστε μας στο {phone}.",
        "confirmed": "Ευχαριστούμε! Το ραντεβού σας ({what}) στις {when} επιβεβαιώθηκε. Τα λέμε τότε. - {clinic}",
        "cancel": (
            "Ευχαριστούμε που μας ενημερώσατε. Η ομάδα του {clinic} θα επικοινωνήσει σύντομα μαζί σας για να "
            "ακυρώσει το ραντεβού σας. {call}"
        ),
        "reschedule": (
            "Ευχαριστούμε που μας ενημερώσατε. Η ομάδα του {clinic} θα επικοινωνήσει σύντομα μαζί σας για νέα "
            "ώρα. {call}"
        ),
        "passed_to_staff": "Ευχαριστούμε για το μήνυμά σας. Κάποιος από την ομάδα του {clinic} θα σας απαντήσει.",
        "help": (
            "Μηνύματα ραντεβού του {clinic}. Απαντήστε Y για επιβεβαίωση, R για αλλαγή ή N για ακύρωση. {call} "
            "Απαντήστε STOP για διακοπή."
        ),
        "opt_out": (
            "{clinic}: η εγγραφή σας καταργήθηκε και δεν θα λαμβάνετε άλλα SMS από εμάς. "
            "Απαντήστε START για να εγγραφείτε ξανά."
        ),
        "opt_out_unsure": (
            "{clinic}: καταλάβαμε ότι δεν θέλετε άλλα μηνύματα και τα σταματήσαμε. Αν δεν εννοούσατε αυτό, "
            "απαντήστε START για να συνεχίσουν."
        ),
        "opt_in": "{clinic}: είστε ξανά εγγεγραμμένοι στα SMS μας. Απαντήστε STOP οποιαδήποτε στιγμή για διακοπή.",
    },
    "it": {
        "call": "Oppure ci chiami al {phone}.",
        "confirmed": "Grazie! Il suo appuntamento ({what}) del {when} è confermato. A presto. - {clinic}",
        "cancel": (
            "Grazie per avercelo detto. Il team di {clinic} la contatterà a breve per annullare l'appuntamento. "
            "{call}"
        ),
        "reschedule": (
            "Grazie per avercelo detto. Il team di {clinic} la contatterà a breve per trovare un nuovo orario. "
            "{call}"
        ),
        "passed_to_staff": "Grazie per il messaggio. Un membro del team di {clinic} le risponderà.",
        "help": (
            "Messaggi sugli appuntamenti di {clinic}. Risponda Y per confermare, R per spostare o N per annullare. "
            "{call} Risponda STOP per non ricevere più messaggi."
        ),
        "opt_out": (
            "{clinic}: la sua iscrizione è stata annullata e non riceverà più SMS da noi. "
            "Risponda START per iscriversi di nuovo."
        ),
        "opt_out_unsure": (
            "{clinic}: abbiamo capito che non desidera più messaggi e li abbiamo interrotti. Se non intendeva "
            "questo, risponda START per riattivarli."
        ),
        "opt_in": "{clinic}: è di nuovo iscritto ai nostri SMS. Risponda STOP in qualsiasi momento per annullare.",
    },
    "es": {
        "call": "O llámenos al {phone}.",
        "confirmed": "¡Gracias! Su cita ({what}) del {when} está confirmada. Hasta entonces. - {clinic}",
        "cancel": (
            "Gracias por avisarnos. El equipo de {clinic} se pondrá en contacto con usted pronto para cancelar "
            "su cita. {call}"
        ),
        "reschedule": (
            "Gracias por avisarnos. El equipo de {clinic} se pondrá en contacto con usted pronto para buscar "
            "otra hora. {call}"
        ),
        "passed_to_staff": "Gracias por su mensaje. Alguien del equipo de {clinic} le responderá.",
        "help": (
            "Mensajes de citas de {clinic}. Responda Y para confirmar, R para cambiar o N para cancelar. {call} "
            "Responda STOP para darse de baja."
        ),
        "opt_out": "{clinic}: se ha dado de baja y no recibirá más SMS nuestros. Responda START para volver a suscribirse.",
        "opt_out_unsure": (
            "{clinic}: entendimos que no desea más mensajes y los hemos detenido. Si no quiso decir eso, "
            "responda START para reanudarlos."
        ),
        "opt_in": "{clinic}: está suscrito de nuevo a nuestros SMS. Responda STOP en cualquier momento para darse de baja.",
    },
}
