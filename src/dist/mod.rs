//! The `dist` part: MPI initialisation, ranks, collectives, abort-on-error.
