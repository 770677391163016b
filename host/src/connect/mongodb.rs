//! The MongoDB sink (being written).

use crate::config::MongoSink;
use crate::connect::SinkCtx;

/// What went wrong in a MongoDB sink.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sink is not as it should be.
    #[error("{0}")]
    Invalid(String),
}

/// Runs the sink until the pipeline stops (or, bounded, its input is done).
pub(crate) fn run(_ctx: &SinkCtx, _cfg: &MongoSink) -> Result<(), Error> {
    Err(Error::Invalid("the mongodb sink is not built yet".into()))
}
