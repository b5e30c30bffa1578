//! Typed reading of a JSON object that collects every problem instead of stopping at the first.
//!
//! serde's derive would stop at the first error and phrase it as "invalid type at line 1 column 80";
//! an operator fixing a NetworkAttachmentDefinition at 3 a.m. needs every wrong key named, with the
//! expected form, in one go. Unknown keys are never errors (runtimes add their own), but each is
//! reported with the closest known key so that typos do not fail silently.

use std::path::PathBuf;
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::error::{ConfigProblem, Scope};

/// Problems found while reading, each with the scope of the key being read when it was found; the
/// caller decides from the scopes whether they are fatal.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<ConfigProblem>, Scope);

impl Problems {
    /// Records a problem with `key`, in the scope being read.
    pub fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            scope: self.1,
            ..ConfigProblem::new(key, message)
        });
    }

    /// Runs `read` with every problem it records in `scope`: the code reading a key says who else
    /// reads it, instead of a list of key names matched afterwards.
    pub fn within<T>(&mut self, scope: Scope, read: impl FnOnce(&mut Problems) -> T) -> T {
        let outer = std::mem::replace(&mut self.1, scope);
        let out = read(self);
        self.1 = outer;
        out
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A JSON object being read, remembering which keys were asked for.
pub struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
    known: Vec<&'static str>,
}

/// The JSON type name of a value, for messages.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> Obj<'a> {
    /// Wraps `map`, whose keys are reported under `path` (empty for the top level).
    pub fn new(map: &'a Map<String, Value>, path: impl Into<String>) -> Obj<'a> {
        Obj {
            map,
            path: path.into(),
            known: Vec::new(),
        }
    }

    /// An absolute path under `key`, `default` when absent or empty; a relative one is a problem naming the
    /// default as the example (it would resolve against whatever directory the runtime runs in).
    pub fn absolute_path(&mut self, key: &'static str, default: &str, problems: &mut Problems) -> PathBuf {
        let path = PathBuf::from(
            self.string(key, problems)
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| default.into()),
        );
        if !path.is_absolute() {
            problems.push(
                self.key(key),
                format!("{} is relative; use an absolute path such as {default}", path.display()),
            );
        }
        path
    }

    /// The full dotted name of `key` in this object.
    pub fn key(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The raw value of a known key; `null` counts as absent.
    pub fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.known.push(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// Marks keys as known without reading them (they belong to someone else).
    pub fn allow(&mut self, keys: &[&'static str]) {
        self.known.extend_from_slice(keys);
    }

    /// A string value.
    pub fn string(&mut self, key: &'static str, problems: &mut Problems) -> Option<String> {
        let value = self.get(key)?;
        match value.as_str() {
            Some(text) => Some(text.to_string()),
            None => {
                problems.push(self.key(key), format!("expected a string, got {}", type_name(value)));
                None
            }
        }
    }

    /// A boolean value.
    pub fn boolean(&mut self, key: &'static str, problems: &mut Problems) -> Option<bool> {
        let value = self.get(key)?;
        match value.as_bool() {
            Some(flag) => Some(flag),
            None => {
                problems.push(
                    self.key(key),
                    format!("expected true or false, got {}", type_name(value)),
                );
                None
            }
        }
    }

    /// An integer in `min..=max`.
    pub fn integer(&mut self, key: &'static str, min: u64, max: u64, problems: &mut Problems) -> Option<u64> {
        let value = self.get(key)?;
        match value.as_u64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                problems.push(
                    self.key(key),
                    format!("expected an integer from {min} to {max}, got {value}"),
                );
                None
            }
        }
    }

    /// A string parsed with `FromStr`; `expected` describes the form for the message.
    pub fn parsed<T: FromStr>(&mut self, key: &'static str, expected: &str, problems: &mut Problems) -> Option<T> {
        let text = self.string(key, problems)?;
        match text.parse::<T>() {
            Ok(parsed) => Some(parsed),
            Err(_) => {
                problems.push(self.key(key), format!("{text:?} is not {expected}"));
                None
            }
        }
    }

    /// A nested object.
    pub fn object(&mut self, key: &'static str, problems: &mut Problems) -> Option<Obj<'a>> {
        let value = self.get(key)?;
        match value.as_object() {
            Some(map) => Some(Obj::new(map, self.key(key))),
            None => {
                problems.push(self.key(key), format!("expected an object, got {}", type_name(value)));
                None
            }
        }
    }

    /// An array.
    pub fn array(&mut self, key: &'static str, problems: &mut Problems) -> Option<&'a Vec<Value>> {
        let value = self.get(key)?;
        match value.as_array() {
            Some(items) => Some(items),
            None => {
                problems.push(self.key(key), format!("expected an array, got {}", type_name(value)));
                None
            }
        }
    }

    /// An array of strings each parsed with `FromStr`.
    pub fn parsed_list<T: FromStr>(
        &mut self,
        key: &'static str,
        expected: &str,
        problems: &mut Problems,
    ) -> Option<Vec<T>> {
        let items = self.array(key, problems)?;
        let full = self.key(key);
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item.as_str().map(|s| s.parse::<T>()) {
                Some(Ok(parsed)) => out.push(parsed),
                _ => problems.push(format!("{full}[{i}]"), format!("{item} is not {expected}")),
            }
        }
        Some(out)
    }

    /// Every key and value, for maps whose keys are data (such as node names).
    pub fn entries(&self) -> impl Iterator<Item = (&'a String, &'a Value)> {
        self.map.iter()
    }

    /// Keys present in the object that nobody asked for, each with the closest known key, if one is close.
    pub fn unknown(&self) -> Vec<(String, Option<&'static str>)> {
        self.map
            .keys()
            .filter(|k| !self.known.contains(&k.as_str()) && !k.starts_with("cni.dev/"))
            .map(|k| (self.key(k), closest(k, &self.known)))
            .collect()
    }
}

/// The known key closest to `key` by edit distance (case-insensitive), if it is close enough to be a typo.
pub fn closest(key: &str, known: &[&'static str]) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (*k, edit_distance(&lower, &k.to_ascii_lowercase())))
        .filter(|(k, d)| *d <= (k.len().max(key.len()) / 3).max(1))
        .min_by_key(|(_, d)| *d)
        .map(|(k, _)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let known = ["master", "mode", "mtu", "multicast", "ipam"];
        assert_eq!(closest("mastr", &known), Some("master"));
        assert_eq!(closest("Multicast", &known), Some("multicast"));
        assert_eq!(closest("isDefaultgateway", &known), None);
    }

    #[test]
    fn collects_all_problems() {
        let value: Value = serde_json::from_str(r#"{"a": 1, "b": "x", "c": 5, "typo": 1}"#).unwrap();
        let mut obj = Obj::new(value.as_object().unwrap(), "");
        let mut problems = Problems::default();
        assert!(obj.string("a", &mut problems).is_none());
        assert!(obj.integer("b", 0, 10, &mut problems).is_none());
        assert!(obj.integer("c", 0, 3, &mut problems).is_none());
        assert_eq!(problems.0.len(), 3);
        assert_eq!(obj.unknown(), vec![("typo".to_string(), None)]);
    }
}
