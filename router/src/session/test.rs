//! Session conversations: whole client exchanges replayed step by step.
