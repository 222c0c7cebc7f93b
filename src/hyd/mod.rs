//! HydrAIDE on-disk format.
