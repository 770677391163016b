//! Attribute macros of the Flowgate guest SDK. Use them through the `flowgate-sdk` crate.
#![deny(missing_docs)]

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::parse::Parser;
use syn::{ItemFn, ItemImpl, Path, parse_macro_input};

/// Marks `fn(&EventRef) -> Vec<u8> | String | Event` (or a `Result` of one) as a map stage.
#[proc_macro_attribute]
pub fn map(args: TokenStream, item: TokenStream) -> TokenStream {
    stage("Map", args, item)
}

/// Marks `fn(&EventRef) -> bool` (or `Result<bool, E>`) as a filter stage.
#[proc_macro_attribute]
pub fn filter(args: TokenStream, item: TokenStream) -> TokenStream {
    stage("Filter", args, item)
}

/// Marks `fn(&EventRef) -> Option<…>` (or a `Result` of one) as a filter-map stage.
#[proc_macro_attribute]
pub fn filter_map(args: TokenStream, item: TokenStream) -> TokenStream {
    stage("FilterMap", args, item)
}

/// Marks `fn(&EventRef) -> Vec<…>` (or a `Result` of one) as a flat-map stage.
#[proc_macro_attribute]
pub fn flat_map(args: TokenStream, item: TokenStream) -> TokenStream {
    stage("FlatMap", args, item)
}

/// Marks `impl flowgate_sdk::Aggregator for T` as the plugin's aggregation (the
/// `flowgate:plugin/aggregator` world).
#[proc_macro_attribute]
pub fn aggregator(args: TokenStream, item: TokenStream) -> TokenStream {
    if !args.is_empty() {
        return syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[aggregator] takes no arguments",
        )
        .to_compile_error()
        .into();
    }
    let imp = parse_macro_input!(item as ItemImpl);
    let ty = &imp.self_ty;
    quote! {
        #imp

        #[doc(hidden)]
        struct __FlowgateAggregator;

        impl ::flowgate_sdk::__private_agg::Guest for __FlowgateAggregator {
            fn init(
                config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
            ) -> ::core::result::Result<(), ::flowgate_sdk::Error> {
                ::flowgate_sdk::__private_agg::init::<#ty>(config)
            }

            fn create() -> ::std::vec::Vec<u8> {
                ::flowgate_sdk::__private_agg::create::<#ty>()
            }

            fn add(
                accumulators: ::std::vec::Vec<::std::vec::Vec<u8>>,
                input: ::flowgate_sdk::__private::flowgate::plugin::types::Batch,
                slots: ::std::vec::Vec<u32>,
            ) -> ::core::result::Result<
                ::flowgate_sdk::__private_agg::flowgate::plugin::windows::AddResult,
                ::flowgate_sdk::Error,
            > {
                ::flowgate_sdk::__private_agg::add::<#ty>(accumulators, input, slots)
            }

            fn merge(
                a: ::std::vec::Vec<u8>,
                b: ::std::vec::Vec<u8>,
            ) -> ::core::option::Option<::std::vec::Vec<u8>> {
                ::flowgate_sdk::__private_agg::merge::<#ty>(a, b)
            }

            fn finish(
                panes: ::std::vec::Vec<::flowgate_sdk::__private_agg::flowgate::plugin::windows::Pane>,
            ) -> ::core::result::Result<::std::vec::Vec<::std::vec::Vec<u8>>, ::flowgate_sdk::Error> {
                ::flowgate_sdk::__private_agg::finish::<#ty>(panes)
            }
        }

        ::flowgate_sdk::__private_agg::export_aggregator!(__FlowgateAggregator with_types_in ::flowgate_sdk::__private_agg);
    }
    .into()
}

/// A `filter` function as the `flowgate:plugin/filter` world: `keep` and `keep-batch`.
fn filter_world(
    func: &ItemFn,
    reads: Option<proc_macro2::TokenStream>,
    init: proc_macro2::TokenStream,
) -> TokenStream {
    let name = &func.sig.ident;
    quote! {
        #func

        #reads

        #[doc(hidden)]
        struct __FlowgateFilter;

        impl ::flowgate_sdk::__private_filter::Keep for __FlowgateFilter {
            #[inline]
            fn keep_ref(
                input: &::flowgate_sdk::EventRef<'_>,
            ) -> ::core::result::Result<bool, ::flowgate_sdk::Error> {
                ::flowgate_sdk::kind::Kept::into_kept(#name(input))
            }
        }

        impl ::flowgate_sdk::__private_filter::Guest for __FlowgateFilter {
            fn init(
                config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
            ) -> ::core::result::Result<(), ::flowgate_sdk::Error> {
                ::flowgate_sdk::__private::run_init(config, #init)
            }

            fn keep(
                event: ::flowgate_sdk::Event,
            ) -> ::core::result::Result<bool, ::flowgate_sdk::Error> {
                ::flowgate_sdk::__private_filter::keep::<Self>(event)
            }

            fn keep_batch(
                input: ::flowgate_sdk::__private::flowgate::plugin::types::Batch,
            ) -> ::core::result::Result<
                ::flowgate_sdk::__private::flowgate::plugin::types::Selection,
                ::flowgate_sdk::Error,
            > {
                ::flowgate_sdk::__private_filter::keep_batch::<Self>(input)
            }
        }

        ::flowgate_sdk::__private_filter::export_filter!(__FlowgateFilter with_types_in ::flowgate_sdk::__private_filter);
    }
    .into()
}

/// The attribute's arguments.
struct Args {
    /// `init = path`.
    init: Option<Path>,
    /// `values = false`: the function never reads the input's value.
    values: bool,
}

/// Parses `init = path` and `values = false`.
fn parse_args(args: TokenStream) -> syn::Result<Args> {
    let mut out = Args {
        init: None,
        values: true,
    };
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("init") {
            out.init = Some(meta.value()?.parse::<Path>()?);
            Ok(())
        } else if meta.path.is_ident("values") {
            out.values = meta.value()?.parse::<syn::LitBool>()?.value;
            Ok(())
        } else {
            Err(meta.error(
                "unknown argument: the arguments are `init = your_init_fn` and `values = false`",
            ))
        }
    });
    parser.parse(args)?;
    Ok(out)
}

fn stage(kind: &str, args: TokenStream, item: TokenStream) -> TokenStream {
    let Args { init, values } = match parse_args(args) {
        Ok(a) => a,
        Err(e) => return e.to_compile_error().into(),
    };
    let func = parse_macro_input!(item as ItemFn);
    let writes = func.sig.inputs.len() == 2;
    if writes && kind != "Map" {
        return syn::Error::new_spanned(
            &func.sig,
            "only `map` takes a second argument (`out: &mut flowgate_sdk::ValueWriter`)",
        )
        .to_compile_error()
        .into();
    }
    // `values = false` is told to the host in a custom section, so that it does not copy the
    // input values into the plugin (they arrive empty).
    let reads = (!values).then(|| {
        quote! {
            #[doc(hidden)]
            #[used]
            #[unsafe(link_section = "flowgate:no-values")]
            static __FLOWGATE_NO_VALUES: [u8; 1] = [1];
        }
    });
    if func.sig.inputs.is_empty() || func.sig.inputs.len() > 2 {
        return syn::Error::new_spanned(
            &func.sig,
            "a stage function takes `event: &flowgate_sdk::EventRef` (and, for `map`, may take `out: &mut flowgate_sdk::ValueWriter`)",
        )
        .to_compile_error()
        .into();
    }
    let name = &func.sig.ident;
    let init = match init {
        Some(path) => quote! { ::core::option::Option::Some(#path) },
        None => quote! { ::core::option::Option::None },
    };
    if kind == "Filter" {
        return filter_world(&func, reads, init);
    }
    let kind = format_ident!("{kind}");
    let body = if writes {
        quote! {
            sink.emit_write(input, |out| ::flowgate_sdk::kind::Written::into_result(#name(input, out)))
        }
    } else {
        quote! {
            ::flowgate_sdk::Returned::emit(::flowgate_sdk::kind::#kind(#name(input)), input, sink)
        }
    };
    quote! {
        #func

        #reads

        #[doc(hidden)]
        struct __FlowgateStage;

        impl ::flowgate_sdk::__private::Stage for __FlowgateStage {
            #[inline]
            fn process<S: ::flowgate_sdk::Sink>(
                input: &::flowgate_sdk::EventRef<'_>,
                sink: &mut S,
            ) -> ::core::result::Result<(), ::flowgate_sdk::Error> {
                #body
            }
        }

        impl ::flowgate_sdk::__private::Guest for __FlowgateStage {
            fn init(
                config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
            ) -> ::core::result::Result<(), ::flowgate_sdk::Error> {
                ::flowgate_sdk::__private::run_init(config, #init)
            }

            fn on_event(
                event: ::flowgate_sdk::Event,
            ) -> ::core::result::Result<::std::vec::Vec<::flowgate_sdk::Event>, ::flowgate_sdk::Error> {
                ::flowgate_sdk::__private::on_event::<Self>(event)
            }

            fn on_batch(
                input: ::flowgate_sdk::__private::flowgate::plugin::types::Batch,
            ) -> ::core::result::Result<
                ::flowgate_sdk::__private::flowgate::plugin::types::BatchResult,
                ::flowgate_sdk::Error,
            > {
                ::flowgate_sdk::__private::on_batch::<Self>(input)
            }
        }

        ::flowgate_sdk::__private::export_stage!(__FlowgateStage with_types_in ::flowgate_sdk::__private);
    }
    .into()
}
