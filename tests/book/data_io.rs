//! data_io (being written)
