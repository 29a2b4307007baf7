//! The `optim` part (see DESIGN.md).
