//! The `zero` part (see DESIGN.md).
