//! Errors of the engine.

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or migrated.
    #[error("open database {url}")]
    Open {
        /// Database URL (without credentials).
        url: String,
        /// Cause.
        #[source]
        source: sqlx::Error,
    },
    /// The database URL names no database this build can open.
    #[error("database URL {url} is not supported: {reason}")]
    UnsupportedUrl {
        /// The URL (without credentials).
        url: String,
        /// What would be.
        reason: &'static str,
    },
    /// Migrations failed.
    #[error("migrate database")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("{operation}")]
    Query {
        /// What was being done.
        operation: &'static str,
        /// Cause.
        #[source]
        source: sqlx::Error,
    },
    /// The thing acted on does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// The action does not fit the current state.
    #[error("{message}")]
    Conflict {
        /// Why.
        message: String,
    },
    /// The inbox journal (where a delivery is written before it is answered) failed.
    #[error("inbox journal {path}: {operation}")]
    Journal {
        /// The file.
        path: String,
        /// What was being done.
        operation: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A stored value could not be decoded.
    #[error("decode stored {what}: {reason}")]
    Corrupt {
        /// What was decoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
}

impl StoreError {
    pub(crate) fn query(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Query { operation, source }
    }

    pub(crate) fn corrupt(what: &'static str, reason: impl ToString) -> StoreError {
        StoreError::Corrupt { what, reason: reason.to_string() }
    }
}
