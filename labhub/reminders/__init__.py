"""Reminders of what needs a person's attention: loans overdue or due tomorrow, audits,
maintenance and calibration due, stock to reorder, devices gone silent.

``due`` gathers them from the domains and says who sees which; ``digest`` e-mails each
person their new ones once a day; ``tables`` records what was sent to whom.
"""
