"""Stand-ins for the parts of a deployment the daemon does not own: a worker that serves a
queue, a load generator and the demo that wires them. Never imported by the runtime."""
