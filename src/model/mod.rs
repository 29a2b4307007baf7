//! The `model` part (see DESIGN.md).
