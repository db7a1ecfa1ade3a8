"""Every change rv-merge makes to a third-party library's internals, one module per library,
each with the version range it was written for and a check of that range at import."""
