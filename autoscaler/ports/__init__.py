"""The shell's ports: the protocols the runtime and the simulator talk through, and the one
error tree adapters map their failures into."""
