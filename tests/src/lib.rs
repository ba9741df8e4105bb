//! Integration tests live in `tests/`; the process lab they drive is shared with the chaos tool.
#![forbid(unsafe_code)]

pub use pbx_chaos::lab::*;
