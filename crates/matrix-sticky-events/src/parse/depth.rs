//! Bounding the nesting depth of untrusted JSON before anything recursive sees it.

/// Whether objects and arrays in `raw` (valid JSON) nest deeper than `max` levels; the outermost
/// object or array is level 1.
///
/// Linear in the input and allocation-free. Most inputs are settled by counting opening
/// brackets, which the compiler vectorises: fewer than `max` of them anywhere cannot nest
/// deeper than `max`.
pub(crate) fn too_deep(raw: &str, max: usize) -> bool {
    let bytes = raw.as_bytes();
    let opening = bytes.iter().filter(|&&b| b == b'{' || b == b'[').count();
    if opening <= max {
        return false;
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::too_deep;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn depth_limit_is_inclusive() {
        assert!(!too_deep(&nested(128), 128));
        assert!(too_deep(&nested(129), 128));
        assert!(too_deep(&nested(10_000), 128));
        assert!(!too_deep("{}", 1));
        assert!(too_deep("{\"a\":{}}", 1));
    }

    #[test]
    fn brackets_in_strings_do_not_count() {
        let s = format!("{{\"a\":\"{}\\\"{}\"}}", "[".repeat(500), "{".repeat(500));
        assert!(!too_deep(&s, 2));
        // Many siblings are not depth.
        let siblings = format!("[{}1]", "[],".repeat(1000));
        assert!(!too_deep(&siblings, 2));
    }
}
