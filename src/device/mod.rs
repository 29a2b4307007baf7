//! The `device` part (see DESIGN.md).
