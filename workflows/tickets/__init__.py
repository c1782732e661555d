"""Ticket creation: Dialog starts TicketWorkflow; its activity writes the ticket into the store."""
