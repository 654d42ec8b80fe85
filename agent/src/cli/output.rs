//! One way out for every command: JSON with `--json`, lines for people otherwise.

use serde::Serialize;

/// Prints `value` as pretty JSON with `--json`, else what `human` writes (it ends with a
/// newline).
pub fn print<T: Serialize + ?Sized>(
    json: bool,
    value: &T,
    human: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", human());
    }
    Ok(())
}
