//! Configuration errors: every problem names the key path and says how to fix it, and all of
//! them are reported together so an operator fixes a file in one pass, not one error per reload.

use std::fmt;

/// One problem with the agent configuration, anchored at a dotted key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted key path, e.g. `advanced.number_of_task_slots`.
    pub path: String,
    /// What is wrong and what would be valid, as a sentence.
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Could not read the configuration file {path}: {source}
    #[error("could not read the configuration file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    /// The file parsed but some values are wrong; every problem is listed.
    #[error("{path} has {} problem(s):\n{}", .errors.len(), render_list(.errors))]
    Invalid {
        path: String,
        errors: Vec<FieldError>,
    },
}

impl ConfigError {
    /// The individual field problems (empty for read and syntax errors).
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            ConfigError::Invalid { errors, .. } => errors,
            _ => &[],
        }
    }
}

fn render_list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Collects field errors during validation.
#[derive(Debug, Default)]
pub struct Errors(pub Vec<FieldError>);

impl Errors {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(path, message));
    }

    /// Adds `more`, except problems of keys that already have one: a refused value was
    /// replaced by its default, so later checks of that key would only confuse.
    pub fn extend_fresh(&mut self, more: impl IntoIterator<Item = FieldError>) {
        let fresh: Vec<FieldError> = more
            .into_iter()
            .filter(|n| !self.0.iter().any(|o| o.path == n.path))
            .collect();
        self.0.extend(fresh);
    }

    /// Checks `lo <= value <= hi` and explains the range otherwise.
    pub fn range<T: PartialOrd + fmt::Display>(
        &mut self,
        path: &str,
        value: T,
        lo: T,
        hi: T,
        hint: &str,
    ) {
        if value < lo || value > hi {
            self.push(
                path,
                format!("must be between {lo} and {hi} (got {value}); {hint}"),
            );
        }
    }
}
