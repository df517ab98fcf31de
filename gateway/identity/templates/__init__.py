"""HTML templates and the style sheet of the login, consent, logout and account pages."""
