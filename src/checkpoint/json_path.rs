//! The key path (`units[2].numel`, `dtype`) at a line and column of a JSON text, so a
//! `meta.json` that does not deserialise is reported by the key at fault rather than by
//! position only (serde_json's errors say where, not which key).

enum Frame {
    /// An object, with the key whose value is being read (after its `:`).
    Object(Option<String>),
    /// An array, with the index of the element being read.
    Array(usize),
}

/// The path of the value being read at `line`:`column` (1-based, as serde_json counts)
/// of `text`, or `None` at the top level.
pub fn path_at(text: &str, line: usize, column: usize) -> Option<String> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut last_string: Option<String> = None;
    let mut chars = text.chars();
    let (mut l, mut c) = (1, 0);
    while let Some(ch) = chars.next() {
        c += 1;
        if ch == '\n' {
            l += 1;
            c = 0;
        }
        if l > line || (l == line && c >= column) {
            break;
        }
        match ch {
            '"' => {
                let mut s = String::new();
                while let Some(x) = chars.next() {
                    c += 1;
                    match x {
                        '\\' => {
                            chars.next();
                            c += 1;
                        }
                        '"' => break,
                        _ => s.push(x),
                    }
                }
                last_string = Some(s);
            }
            ':' => {
                if let Some(Frame::Object(key)) = stack.last_mut() {
                    *key = last_string.take();
                }
            }
            ',' => match stack.last_mut() {
                Some(Frame::Object(key)) => *key = None,
                Some(Frame::Array(i)) => *i += 1,
                None => {}
            },
            '{' => stack.push(Frame::Object(None)),
            '[' => stack.push(Frame::Array(0)),
            '}' | ']' => {
                stack.pop();
            }
            _ => {}
        }
    }
    let mut path = String::new();
    for f in &stack {
        match f {
            Frame::Object(Some(k)) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
            }
            Frame::Object(None) => {}
            Frame::Array(i) => path.push_str(&format!("[{i}]")),
        }
    }
    (!path.is_empty()).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, needle: &str) -> Option<String> {
        let pos = text.find(needle).expect("needle") + needle.len();
        let before = &text[..pos];
        let line = before.matches('\n').count() + 1;
        let column = pos - before.rfind('\n').map_or(0, |i| i + 1);
        path_at(text, line, column)
    }

    #[test]
    fn paths_of_nested_keys_and_array_elements() {
        let text = "{\n  \"step\": 3,\n  \"dtype\": \"fp8\",\n  \"units\": [\n    {\"name\": \"a\", \"numel\": 1},\n    {\"name\": \"b,\\\"c\", \"numel\": \"x\"}\n  ],\n  \"model\": {\"kind\": \"gpt\", \"n_layer\": -1}\n}";
        assert_eq!(at(text, "\"fp8\"").as_deref(), Some("dtype"));
        assert_eq!(at(text, "\"x\"").as_deref(), Some("units[1].numel"));
        assert_eq!(at(text, "-1").as_deref(), Some("model.n_layer"));
        assert_eq!(path_at(text, 1, 1), None);
        // Minified alike.
        let flat = "{\"a\":{\"b\":[1,2,{\"c\":true}]}}";
        assert_eq!(at(flat, "true").as_deref(), Some("a.b[2].c"));
    }
}
