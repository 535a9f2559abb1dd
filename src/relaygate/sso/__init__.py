"""Single sign-on for the console: OpenID Connect providers (:mod:`.oidc`), an
authenticating proxy's headers (:mod:`.proxy`), and the users and groups both map to
(:mod:`relaygate.services.identities`)."""
