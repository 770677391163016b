//! The PostgreSQL change source (being written).

use super::Error;
use crate::config::PostgresCdcSource;
use crate::connect::SourceCtx;

/// Runs the source until the pipeline stops.
pub(crate) fn run(_ctx: &SourceCtx, _cfg: &PostgresCdcSource) -> Result<(), Error> {
    Err(Error::Invalid("postgres-cdc is not built yet".into()))
}
