//! Pieces the experiments share.
