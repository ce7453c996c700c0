"""Who is where: the session registry, live connections, operator control of sessions, the process list."""
