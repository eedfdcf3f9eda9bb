//! Docker's query-string conventions.

use std::collections::HashMap;

use crate::error::ApiError;

pub type Query = HashMap<String, String>;

/// Docker's boolean: absent, "", "0", "false" (any case) and "no" are false.
pub fn flag(q: &Query, key: &str) -> bool {
    match q.get(key) {
        None => false,
        Some(v) => !matches!(v.to_ascii_lowercase().as_str(), "" | "0" | "false" | "no"),
    }
}

pub fn int(q: &Query, key: &str) -> Result<Option<i64>, ApiError> {
    match q.get(key).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid value for {key}: {v:?}"))),
    }
}

/// The `filters` parameter: `{"k":["v"]}` or the legacy `{"k":{"v":true}}`.
pub fn filters(q: &Query) -> Result<HashMap<String, Vec<String>>, ApiError> {
    let Some(raw) = q.get("filters").filter(|s| !s.is_empty()) else {
        return Ok(HashMap::new());
    };
    let v: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid filter: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::bad_request("invalid filter: not an object"))?;
    let mut out = HashMap::new();
    for (k, val) in obj {
        let vals: Vec<String> = match val {
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
            serde_json::Value::Object(o) => o
                .iter()
                .filter(|(_, b)| b.as_bool().unwrap_or(false))
                .map(|(s, _)| s.clone())
                .collect(),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "invalid filter value for {k}"
                )))
            }
        };
        out.insert(k.clone(), vals);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Query {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn docker_booleans() {
        assert!(flag(&q(&[("all", "1")]), "all"));
        assert!(flag(&q(&[("all", "True")]), "all"));
        assert!(!flag(&q(&[("all", "0")]), "all"));
        assert!(!flag(&q(&[("all", "false")]), "all"));
        assert!(!flag(&q(&[]), "all"));
    }

    #[test]
    fn both_filter_shapes() {
        let f = filters(&q(&[("filters", r#"{"status":["running","exited"]}"#)])).unwrap();
        assert_eq!(f["status"], vec!["running", "exited"]);
        let f = filters(&q(&[("filters", r#"{"label":{"a=b":true,"c":false}}"#)])).unwrap();
        assert_eq!(f["label"], vec!["a=b"]);
        assert!(filters(&q(&[("filters", "not json")])).is_err());
        assert!(filters(&q(&[("filters", r#"{"x":1}"#)])).is_err());
    }

    #[test]
    fn ints() {
        assert_eq!(int(&q(&[("t", "5")]), "t").unwrap(), Some(5));
        assert_eq!(int(&q(&[]), "t").unwrap(), None);
        assert!(int(&q(&[("t", "x")]), "t").is_err());
    }
}
