//! A small argv reader for the tool subcommands (`--name value`, `--name=value`, flags).
//!
//! Hand-written rather than clap: the `roslan` binary is exec'd on every CNI call, so it keeps its
//! dependencies and start-up cost minimal, and two subcommands with a handful of options do not need
//! more. Every error names the option, and callers turn it into exit code 2.

use std::str::FromStr;

/// The options a subcommand accepts: name (with the leading `--`) and whether it takes a value.
pub type Spec = &'static [(&'static str, bool)];

/// Options in the order given; an option may repeat (`--to A --to B`).
#[derive(Debug, Default)]
pub struct Parsed {
    opts: Vec<(&'static str, Option<String>)>,
}

/// Reads `args` against `spec`; positional arguments and unknown options are errors.
pub fn parse(args: &[String], spec: Spec) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let mut items = args.iter();
    while let Some(arg) = items.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        let Some(&(known, takes_value)) = spec.iter().find(|(n, _)| *n == name) else {
            let known: Vec<&str> = spec.iter().map(|(n, _)| *n).collect();
            return Err(if name.starts_with('-') {
                format!("unknown option {name}; options: {}", known.join(" "))
            } else {
                format!("unexpected argument {name:?}; options: {}", known.join(" "))
            });
        };
        let value = match (takes_value, inline) {
            (false, None) => None,
            (false, Some(_)) => return Err(format!("{known} takes no value")),
            (true, Some(value)) => Some(value),
            (true, None) => Some(items.next().cloned().ok_or_else(|| format!("{known} needs a value"))?),
        };
        parsed.opts.push((known, value));
    }
    Ok(parsed)
}

impl Parsed {
    /// True if the flag was given.
    pub fn flag(&self, name: &str) -> bool {
        self.opts.iter().any(|(n, _)| *n == name)
    }

    /// The last value given for `name` (a later option overrides an earlier one, as usual).
    pub fn value(&self, name: &str) -> Option<&str> {
        self.opts
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Every value given for a repeatable option.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.opts
            .iter()
            .filter(|(n, _)| *n == name)
            .filter_map(|(_, v)| v.as_deref())
            .collect()
    }

    /// The value parsed as `T`, `default` when absent.
    pub fn number<T: FromStr>(&self, name: &str, default: T, what: &str) -> Result<T, String> {
        match self.value(name) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|_| format!("{name} {text:?}: expected {what}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: Spec = &[("--json", false), ("--to", true), ("--count", true)];

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn values_flags_and_repeats() {
        let p = parse(&args(&["--to", "a", "--json", "--to=b", "--count", "3"]), SPEC).unwrap();
        assert!(p.flag("--json"));
        assert_eq!(p.values("--to"), vec!["a", "b"]);
        assert_eq!(p.number("--count", 10u32, "a count").unwrap(), 3);
        assert_eq!(p.number("--missing", 7u32, "a count").unwrap(), 7);
    }

    #[test]
    fn errors_name_the_option() {
        assert!(
            parse(&args(&["--to"]), SPEC)
                .unwrap_err()
                .contains("--to needs a value")
        );
        assert!(
            parse(&args(&["--nope"]), SPEC)
                .unwrap_err()
                .contains("unknown option --nope")
        );
        assert!(
            parse(&args(&["stray"]), SPEC)
                .unwrap_err()
                .contains("unexpected argument")
        );
        assert!(
            parse(&args(&["--json=1"]), SPEC)
                .unwrap_err()
                .contains("takes no value")
        );
        let p = parse(&args(&["--count", "x"]), SPEC).unwrap();
        assert!(
            p.number("--count", 1u32, "a count")
                .unwrap_err()
                .contains("expected a count")
        );
    }
}
