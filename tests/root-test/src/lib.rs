//! `#[root_test]`: one attribute for the black-box tests that need root.
//!
//! Such a test must run in CI (as root, with the `root-tests` feature `make test` enables) and must show
//! as *ignored*, never as passed, everywhere else. Spelled out, that is `#[test]` plus a four-line
//! `cfg_attr(not(feature = "root-tests"), ignore = "...")` on every one of a hundred tests; this
//! attribute writes both. The `cfg_attr` is emitted into the test's own crate, so the feature checked is
//! the tests crate's, not this one's.
//!
//! ```ignore
//! #[root_test]
//! fn add_then_del() { /* ... */ }
//!
//! #[root_test("needs root, the peers and the images: run `make e2e` as root")]
//! fn the_whole_node() { /* ... */ }
//! ```
//!
//! Written against `proc_macro` alone: it only prepends two attributes, which needs no parser.

use proc_macro::{TokenStream, TokenTree};

/// Why a root test was ignored, unless the test names a more precise reason.
const DEFAULT_REASON: &str = "\"needs root and network namespaces: run `make test` as root\"";

/// Marks a test that needs root: `#[test]`, ignored with a reason unless the `root-tests` feature of the
/// calling crate is on. The optional argument is the reason, a string literal.
#[proc_macro_attribute]
pub fn root_test(reason: TokenStream, test: TokenStream) -> TokenStream {
    let reason = match reason.into_iter().collect::<Vec<_>>().as_slice() {
        [] => DEFAULT_REASON.to_string(),
        [TokenTree::Literal(literal)] if literal.to_string().starts_with('"') => literal.to_string(),
        _ => {
            return "compile_error!(\"#[root_test] takes nothing or one string literal, the reason\");"
                .parse()
                .expect("a valid token stream");
        }
    };
    let attributes: TokenStream = format!("#[test] #[cfg_attr(not(feature = \"root-tests\"), ignore = {reason})]")
        .parse()
        .expect("two valid attributes");
    attributes.into_iter().chain(test).collect()
}
