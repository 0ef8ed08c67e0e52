//! The attributes of Eddy's Rust guest SDK. Each one generates, in the UDF's own crate, the bindings of one WIT
//! world and the exports that feed that world's calls to the user's function (or trait impl). See the
//! `eddy-guest` crate for how to use them.

use proc_macro::TokenStream;
use proc_macro2::{Ident, TokenStream as Tokens};
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::{ItemFn, ItemImpl, Path, Token, parse_macro_input};

/// The contract, embedded so that UDF crates need no path to it.
const WIT: &str = include_str!("../../../wit/udf.wit");

/// `init = path::to::hook`: a function `fn(&eddy::Config) -> Result<(), eddy::Error>` run once per instance.
struct Args {
    init: Option<Path>,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Args> {
        if input.is_empty() {
            return Ok(Args { init: None });
        }
        let name: Ident = input.parse()?;
        if name != "init" {
            return Err(syn::Error::new(name.span(), "the only option is `init = <function>`"));
        }
        input.parse::<Token![=]>()?;
        Ok(Args { init: Some(input.parse()?) })
    }
}

/// The module holding a world's bindings and exports; `body` implements the world's function interface for `Udf`.
fn component(world: &str, body: Tokens, init: Tokens) -> Tokens {
    let world = format!("eddy:udf/{world}");
    quote! {
        #[doc(hidden)]
        #[allow(warnings, clippy::all, clippy::pedantic)]
        mod __eddy_udf {
            use super::*;
            ::eddy::__private::wit_bindgen::generate!({
                inline: #WIT,
                world: #world,
                runtime_path: "::eddy::__private::wit_bindgen::rt",
                generate_all,
            });
            struct Udf;
            #body
            impl exports::eddy::udf::lifecycle::Guest for Udf {
                fn init(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                    #init
                }
            }
            fn outputs((main, side): ::eddy::__private::Emitted) -> eddy::udf::types::Outputs {
                eddy::udf::types::Outputs {
                    main,
                    side: side.into_iter().map(|(tag, records)| eddy::udf::types::SideOutput { tag, records }).collect(),
                }
            }
            export!(Udf);
        }
    }
}

type Bytes = Tokens;

fn function_body(world: &str, name: &Ident) -> Tokens {
    let p = quote!(::eddy::__private);
    let vec: Bytes = quote!(::std::vec::Vec<u8>);
    let res = |ok: Tokens| quote!(::std::result::Result<#ok, ::std::string::String>);
    match world {
        "mapper-udf" => {
            let ret = res(vec.clone());
            quote! {
                impl exports::eddy::udf::mapper::Guest for Udf {
                    fn map_batch(input: #vec) -> #ret {
                        #p::run_map(&input, |event| #p::IntoUdfResult::into_udf_result(#name(event)))
                    }
                }
            }
        }
        "filter-udf" => {
            let ret = res(quote!(::std::vec::Vec<bool>));
            quote! {
                impl exports::eddy::udf::filter::Guest for Udf {
                    fn filter_batch(input: #vec) -> #ret {
                        #p::run_filter(&input, |event| #p::IntoUdfResult::into_udf_result(#name(event)))
                    }
                }
            }
        }
        "flat-mapper-udf" => {
            let ret = res(vec.clone());
            quote! {
                impl exports::eddy::udf::flat_mapper::Guest for Udf {
                    fn flat_map_batch(input: #vec) -> #ret {
                        #p::run_flat_map(&input, |event| #p::IntoUdfResult::into_udf_result(#p::Many(#name(event))))
                    }
                }
            }
        }
        "key-selector-udf" => {
            let ret = res(vec.clone());
            quote! {
                impl exports::eddy::udf::key_selector::Guest for Udf {
                    fn select_keys(input: #vec) -> #ret {
                        #p::run_select_keys(&input, |event| #p::IntoUdfResult::into_udf_result(#p::Key(#name(event))))
                    }
                }
            }
        }
        "timestamp-assigner-udf" => {
            let ret = res(quote!(::std::vec::Vec<i64>));
            quote! {
                impl exports::eddy::udf::timestamp_assigner::Guest for Udf {
                    fn extract_timestamps(input: #vec) -> #ret {
                        #p::run_timestamps(&input, |event| #p::IntoUdfResult::into_udf_result(#name(event)))
                    }
                }
            }
        }
        "reducer-udf" => {
            let ret = res(vec.clone());
            quote! {
                impl exports::eddy::udf::reducer::Guest for Udf {
                    fn reduce(accumulators: #vec, inputs: #vec, targets: ::std::vec::Vec<u32>) -> #ret {
                        #p::run_reduce(&accumulators, &inputs, &targets, |acc, next| {
                            #p::IntoUdfResult::into_udf_result(#name(acc, next))
                        })
                    }
                }
            }
        }
        "window-processor-udf" => {
            let ret = res(quote!(eddy::udf::types::Outputs));
            quote! {
                impl exports::eddy::udf::window_processor::Guest for Udf {
                    fn process_windows(
                        windows: ::std::vec::Vec<exports::eddy::udf::window_processor::WindowContents>,
                    ) -> #ret {
                        let windows = windows.into_iter().map(|w| {
                            let window = match w.window {
                                eddy::udf::types::Window::Time(t) => ::eddy::Window::Time { start: t.start, end: t.end },
                                eddy::udf::types::Window::Global => ::eddy::Window::Global,
                            };
                            (w.key, window, w.elements)
                        });
                        #p::run_process_windows(windows, |info, events, out| {
                            #p::IntoUdfResult::into_udf_result(#name(info, events, out))
                        })
                        .map(outputs)
                    }
                }
            }
        }
        _ => Tokens::new(),
    }
}

fn function_udf(world: &str, args: TokenStream, item: TokenStream) -> TokenStream {
    let args = parse_macro_input!(args as Args);
    let func = parse_macro_input!(item as ItemFn);
    let body = function_body(world, &func.sig.ident);
    let hook = match &args.init {
        Some(path) => quote!(::std::option::Option::Some(#path)),
        None => quote!(::std::option::Option::None),
    };
    let component = component(world, body, quote!(::eddy::__private::run_init(&config, #hook)));
    quote!(#func #component).into()
}

/// A map function: `fn(Event) -> Event` (or `Result<Event, E>`).
#[proc_macro_attribute]
pub fn map(args: TokenStream, item: TokenStream) -> TokenStream {
    function_udf("mapper-udf", args, item)
}

/// A filter: `fn(&Event) -> bool` (or `Result<bool, E>`).
#[proc_macro_attribute]
pub fn filter(args: TokenStream, item: TokenStream) -> TokenStream {
    function_udf("filter-udf", args, item)
}

/// A flat-map function: `fn(Event) -> Vec<Event>` or `Option<Event>` (or a `Result` of one).
#[proc_macro_attribute]
pub fn flat_map(args: TokenStream, item: TokenStream) -> TokenStream {
    function_udf("flat-mapper-udf", args, item)
}

/// A key selector: `fn(&Event) -> K` where K is bytes, a string or an integer (or `Result<K, E>`).
#[proc_macro_attribute]
pub fn key_selector(args: TokenStream, item: TokenStream) -> TokenStream {
    function_udf("key-selector-udf", args, item)
}

/// A timestamp assigner: `fn(&Event) -> i64` (or `Result<i64, E>`).
#[proc_macro_attribute]
pub fn timestamp_assigner(args: TokenStream, item: TokenStream) -> TokenStream {
    function_udf("timestamp-assigner-udf", args, item)
}

/// A reduce function: `fn(&mut Event<'static>, &Event)` folding the second event into the first.
#[proc_macro_attribute]
pub fn reduce(args: TokenStream, item: TokenStream) -> TokenStream {
    function_udf("reducer-udf", args, item)
}

/// A process-window function: `fn(&WindowInfo, &[Event], &mut Output)` (or returning `Result<(), E>`).
#[proc_macro_attribute]
pub fn process_window(args: TokenStream, item: TokenStream) -> TokenStream {
    function_udf("window-processor-udf", args, item)
}

fn impl_udf(world: &str, item: TokenStream) -> TokenStream {
    let block = parse_macro_input!(item as ItemImpl);
    let ty = &block.self_ty;
    let p = quote!(::eddy::__private);
    let outputs = quote!(::std::result::Result<eddy::udf::types::Outputs, ::std::string::String>);
    let vec = quote!(::std::vec::Vec<u8>);
    let bytes_result = quote!(::std::result::Result<::std::vec::Vec<u8>, ::std::string::String>);
    let (body, init) = if world == "processor-udf" {
        (
            quote! {
                impl exports::eddy::udf::processor::Guest for Udf {
                    fn process(input: u32, records: #vec) -> #outputs {
                        INSTANCE.with(|f| #p::run_process(f, input, &records)).map(outputs)
                    }
                    fn on_timers(timers: ::std::vec::Vec<exports::eddy::udf::processor::FiredTimer>) -> #outputs {
                        let timers = timers.into_iter().map(|t| {
                            let event_time = ::std::matches!(t.domain, eddy::udf::types::TimeDomain::EventTime);
                            (t.key, t.timestamp, event_time)
                        });
                        INSTANCE.with(|f| #p::run_on_timers(f, timers)).map(outputs)
                    }
                }
                impl exports::eddy::udf::state_schema::Guest for Udf {
                    fn declared_states() -> ::std::option::Option<
                        ::std::vec::Vec<exports::eddy::udf::state_schema::StateDeclaration>,
                    > {
                        use self::exports::eddy::udf::state_schema::{StateDeclaration, StateKind};
                        use self::eddy::udf::keyed_state::{Ttl, TtlUpdate, TtlVisibility};
                        let states = #p::declared_states::<#ty>()?;
                        ::std::option::Option::Some(states.into_iter().map(|(name, kind, ttl)| StateDeclaration {
                            name,
                            kind: match kind {
                                0 => StateKind::Value,
                                1 => StateKind::List,
                                _ => StateKind::Map,
                            },
                            ttl: ttl.map(|(millis, update_on_read, return_expired)| Ttl {
                                time_to_live_ms: millis,
                                update: if update_on_read { TtlUpdate::OnReadAndWrite } else { TtlUpdate::OnCreateAndWrite },
                                visibility: if return_expired {
                                    TtlVisibility::ReturnExpiredIfNotCleanedUp
                                } else {
                                    TtlVisibility::NeverReturnExpired
                                },
                            }),
                        }).collect())
                    }
                }
            },
            quote!(INSTANCE.with(|f| #p::run_process_init(f, &config))),
        )
    } else {
        (
            quote! {
                impl exports::eddy::udf::aggregator::Guest for Udf {
                    fn create_accumulator() -> #bytes_result {
                        INSTANCE.with(|f| #p::run_create(f))
                    }
                    fn add(accumulators: #vec, inputs: #vec, targets: ::std::vec::Vec<u32>) -> #bytes_result {
                        INSTANCE.with(|f| #p::run_add(f, &accumulators, &inputs, &targets))
                    }
                    fn merge(accumulators: #vec, others: #vec, targets: ::std::vec::Vec<u32>) -> #bytes_result {
                        INSTANCE.with(|f| #p::run_merge(f, &accumulators, &others, &targets))
                    }
                    fn get_result(accumulators: #vec) -> #bytes_result {
                        INSTANCE.with(|f| #p::run_get_result(f, &accumulators))
                    }
                }
            },
            quote!(INSTANCE.with(|f| #p::run_aggregate_init(f, &config))),
        )
    };
    let body = quote! {
        ::std::thread_local! {
            static INSTANCE: ::std::cell::RefCell<#ty> =
                ::std::cell::RefCell::new(<#ty as ::std::default::Default>::default());
        }
        #body
    };
    let component = component(world, body, init);
    quote!(#block #component).into()
}

/// A process function: put it on `impl eddy::Process for YourType`.
#[proc_macro_attribute]
pub fn process(_args: TokenStream, item: TokenStream) -> TokenStream {
    impl_udf("processor-udf", item)
}

/// An aggregate function: put it on `impl eddy::Aggregate for YourType`.
#[proc_macro_attribute]
pub fn aggregate(_args: TokenStream, item: TokenStream) -> TokenStream {
    impl_udf("aggregator-udf", item)
}
