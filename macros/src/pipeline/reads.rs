//! Which event fields a predicate closure reads, so that a pipeline with a `filter` or a
//! `where` still tells the decoder which fields to decode. Conservative: any use of the
//! closure's parameter other than `param.field` (a method call on it, passing it on, a
//! macro, a nested closure rebinding the name, a non-closure predicate) means "cannot say".

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use syn::{Expr, Pat};

/// The fields `|e| …` reads as `e.field`, or `None` when it may read more.
pub fn closure_fields(e: &Expr) -> Option<Vec<String>> {
    let Expr::Closure(c) = e else { return None };
    let [param] = c.inputs.iter().collect::<Vec<_>>()[..] else {
        return None;
    };
    let param = match param {
        Pat::Ident(p) if p.subpat.is_none() => p.ident.to_string(),
        Pat::Type(t) => match &*t.pat {
            Pat::Ident(p) if p.subpat.is_none() => p.ident.to_string(),
            _ => return None,
        },
        _ => return None,
    };
    let body = &c.body;
    let mut out = Vec::new();
    scan(quote::quote!(#body), &param, &mut out)?;
    Some(out)
}

fn scan(tokens: TokenStream, param: &str, out: &mut Vec<String>) -> Option<()> {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            TokenTree::Group(g) => scan(g.stream(), param, out)?,
            TokenTree::Ident(id) if *id == param => {
                // `param . field`, where `field` is not called as a method of the event.
                let dot =
                    matches!(tokens.get(i + 1), Some(TokenTree::Punct(p)) if p.as_char() == '.');
                let Some(TokenTree::Ident(field)) = tokens.get(i + 2) else {
                    return None;
                };
                if !dot {
                    return None;
                }
                if matches!(tokens.get(i + 3), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis)
                    || matches!(tokens.get(i + 3), Some(TokenTree::Punct(p)) if p.as_char() == ':')
                {
                    return None;
                }
                let f = field.to_string();
                if !out.contains(&f) {
                    out.push(f);
                }
                i += 3;
                continue;
            }
            // A macro may read the parameter in ways the tokens do not show (`{e:?}`).
            TokenTree::Punct(p)
                if p.as_char() == '!'
                    && i > 0
                    && matches!(tokens[i - 1], TokenTree::Ident(_))
                    && matches!(tokens.get(i + 1), Some(TokenTree::Group(_))) =>
            {
                return None;
            }
            _ => {}
        }
        i += 1;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::closure_fields;

    fn fields(src: &str) -> Option<Vec<String>> {
        closure_fields(&syn::parse_str(src).expect("an expression"))
    }

    #[test]
    fn field_accesses_are_read() {
        assert_eq!(fields("|e| !e.success"), Some(vec!["success".into()]));
        assert_eq!(
            fields(
                "|r: &Ev| r.model.starts_with(\"gpt\") && r.latency_ms > 10.0 && r.model.len() > 2"
            ),
            Some(vec!["model".into(), "latency_ms".into()])
        );
        assert_eq!(fields("|e| true"), Some(vec![]));
    }

    #[test]
    fn anything_else_cannot_say() {
        assert_eq!(fields("is_ok"), None);
        assert_eq!(fields("|e| check(e)"), None);
        assert_eq!(fields("|e| e.is_ok()"), None);
        assert_eq!(fields("|e| { let x = e; x.success }"), None);
        assert_eq!(fields("|e| format!(\"{e:?}\").is_empty()"), None);
        assert_eq!(fields("|e| e.tags.iter().any(|e| e == \"x\")"), None);
        assert_eq!(fields("|e| e.0"), None);
        assert_eq!(fields("|(a, b)| a"), None);
        assert_eq!(fields("|a, b| a.x"), None);
    }
}
