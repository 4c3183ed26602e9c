//! `pipeline!`: parse ([`ast`]), check into a model ([`check`]), generate ([`expand`]).

mod ast;
mod check;
mod expand;

use proc_macro2::TokenStream;

pub fn expand(input: TokenStream) -> TokenStream {
    let digest = digest(&input);
    let decl: ast::PipelineDecl = match syn::parse2(input) {
        Ok(d) => d,
        Err(e) => return e.to_compile_error(),
    };
    let cx = crate::ctxt::Ctxt::new();
    let model = check::check(&cx, &decl);
    match cx.check() {
        Ok(()) => expand::generate(&decl, &model.expect("no errors, so a model"), &digest),
        // Quiet failure: the error, plus the types the user expects, so that one mistake
        // gives one error rather than a cascade at every use of the pipeline.
        Err(e) => {
            let mut out = e.to_compile_error();
            out.extend(expand::fallback(&decl));
            out
        }
    }
}

/// FNV-1a of the declaration without its leading attributes (doc comments): recorded in
/// checkpoints, so that state written by another declaration of the same name is refused.
fn digest(input: &TokenStream) -> String {
    let mut tokens = input.clone().into_iter().peekable();
    let mut rest = TokenStream::new();
    let mut leading = true;
    while let Some(t) = tokens.next() {
        if leading {
            if let proc_macro2::TokenTree::Punct(p) = &t {
                if p.as_char() == '#' {
                    tokens.next(); // the attribute's [...] group
                    continue;
                }
            }
            leading = false;
        }
        rest.extend(std::iter::once(t));
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in rest.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::digest;
    use quote::quote;

    #[test]
    fn the_digest_ignores_doc_comments_but_not_the_declaration() {
        let a = digest(&quote! {
            /// One doc.
            pub pipeline P for E { window: tumbling(1m), aggregate { n: count() } }
        });
        let b = digest(&quote! {
            /// Another doc.
            pub pipeline P for E { window: tumbling(1m), aggregate { n: count() } }
        });
        let c = digest(&quote! {
            /// One doc.
            pub pipeline P for E { window: tumbling(5m), aggregate { n: count() } }
        });
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
