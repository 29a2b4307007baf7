//! The `checkpoint` part (see DESIGN.md).
