//! `pipeline!`: parse ([`ast`]), check into a model ([`check`]), generate ([`expand`]).

mod ast;
mod check;
mod expand;

use proc_macro2::TokenStream;

pub fn expand(input: TokenStream) -> TokenStream {
    let decl: ast::PipelineDecl = match syn::parse2(input) {
        Ok(d) => d,
        Err(e) => return e.to_compile_error(),
    };
    let cx = crate::ctxt::Ctxt::new();
    let model = check::check(&cx, &decl);
    match cx.check() {
        Ok(()) => expand::generate(&decl, &model.expect("no errors, so a model")),
        // Quiet failure: the error, plus the types the user expects, so that one mistake
        // gives one error rather than a cascade at every use of the pipeline.
        Err(e) => {
            let mut out = e.to_compile_error();
            out.extend(expand::fallback(&decl));
            out
        }
    }
}
