//! The library's error type: every failure names what it is about (file, table, partition, row).

use std::path::PathBuf;

/// Result alias used across the library.
pub type KaratResult<T> = std::result::Result<T, KaratError>;

/// Everything that can go wrong inside karat. The binary maps these onto exit codes:
/// [`KaratError::Config`] and [`KaratError::Usage`] are exit code 2, everything else 1.
#[derive(Debug, thiserror::Error)]
pub enum KaratError {
    /// `karat.toml` is malformed or inconsistent; carries the position in the file.
    #[error("{file}:{line}:{column}: {message}")]
    Config {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A command was called with arguments that cannot work (unknown table, bad partition).
    #[error("{0}")]
    Usage(String),
    /// Reading or writing the lake failed.
    #[error("lake object {path}: {source}")]
    Storage {
        path: String,
        #[source]
        source: object_store::Error,
    },
    /// A source could not be read (file, HTTP endpoint).
    #[error("source {source_name}: {message}")]
    Source {
        source_name: String,
        message: String,
    },
    /// A Delta table operation failed.
    #[error("delta table {table}: {source}")]
    Delta {
        table: String,
        #[source]
        source: deltalake::DeltaTableError,
    },
    /// A SQL statement or expression failed to plan or run.
    #[error("{context}: {source}")]
    Sql {
        context: String,
        #[source]
        source: deltalake::datafusion::error::DataFusionError,
    },
    /// An Arrow kernel failed while processing a table/partition.
    #[error("{context}: {source}")]
    Arrow {
        context: String,
        #[source]
        source: deltalake::arrow::error::ArrowError,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Row accounting of a bronze batch did not balance: a bug or data loss, never ignored.
    #[error("table {table} bronze batch {batch}: row accounting does not balance: {detail}")]
    Accounting {
        table: String,
        batch: String,
        detail: String,
    },
    /// Anything else, with enough context to act on.
    #[error("{0}")]
    Other(String),
}

impl KaratError {
    /// True for errors caused by the caller (config or arguments): exit code 2.
    pub fn is_usage(&self) -> bool {
        matches!(self, KaratError::Config { .. } | KaratError::Usage(_))
    }

    pub(crate) fn delta(table: impl Into<String>, source: deltalake::DeltaTableError) -> Self {
        KaratError::Delta {
            table: table.into(),
            source,
        }
    }

    pub(crate) fn sql(
        context: impl Into<String>,
        source: deltalake::datafusion::error::DataFusionError,
    ) -> Self {
        KaratError::Sql {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn arrow(
        context: impl Into<String>,
        source: deltalake::arrow::error::ArrowError,
    ) -> Self {
        KaratError::Arrow {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        KaratError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn storage(path: impl Into<String>, source: object_store::Error) -> Self {
        KaratError::Storage {
            path: path.into(),
            source,
        }
    }
}
