//! The service supervisor: starts the services of a manifest, restarts them with backoff, detects crash loops, keeps a log ring per service, and answers status requests on a unix socket.
