//! Error kinds that decide the process exit code (documented in the README).

use std::fmt;

/// The class of a failure, as the user sees it in the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Anything unexpected at run time (exit 1).
    Runtime,
    /// Bad command line (exit 2).
    Usage,
    /// The input exists but is not decodable video, or raw frames are malformed (exit 65).
    Data,
    /// The input does not exist or cannot be opened (exit 66).
    NoInput,
    /// Interrupted by the user (exit 130).
    Interrupted,
}

impl ErrorKind {
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Runtime => 1,
            ErrorKind::Usage => 2,
            ErrorKind::Data => 65,
            ErrorKind::NoInput => 66,
            ErrorKind::Interrupted => 130,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Runtime => "runtime",
            ErrorKind::Usage => "usage",
            ErrorKind::Data => "data",
            ErrorKind::NoInput => "no-input",
            ErrorKind::Interrupted => "interrupted",
        }
    }
}

/// An error that carries its exit-code class; wrap it in `anyhow::Error` freely,
/// `kind_of` finds it again anywhere in the chain.
#[derive(Debug)]
pub struct Classified {
    pub kind: ErrorKind,
    pub message: String,
}

impl fmt::Display for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Classified {}

/// Build an `anyhow::Error` of the given kind.
pub fn classified(kind: ErrorKind, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Classified { kind, message: message.into() })
}

/// The kind of an error: the first `Classified` in its chain, else `Runtime`.
pub fn kind_of(err: &anyhow::Error) -> ErrorKind {
    err.chain().find_map(|e| e.downcast_ref::<Classified>().map(|c| c.kind)).unwrap_or(ErrorKind::Runtime)
}
