"""Auth: access tokens and the roles (``tokens``), users, passwords and token revocation (``users``)."""
