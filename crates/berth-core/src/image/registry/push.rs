//! `docker push` (next step).
