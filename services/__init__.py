"""kefu services: NLU, Dialog, Knowledge and Generation, plus what they share."""
