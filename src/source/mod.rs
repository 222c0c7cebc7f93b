//! What is backed up: the file-system walker and (later) the HydrAIDE-aware source.
