//! `flows/catalog.yaml`: the products recommendations are drawn from.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::model::{line_of, read};
use super::FlowError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub sku: String,
    /// Name per locale (`ja`, `en`).
    pub name: BTreeMap<String, String>,
    #[serde(deserialize_with = "super::model::amount::deserialize")]
    pub price: Decimal,
    pub currency: String,
    pub category: String,
    /// 1 is the best seller; products without a rank are never "bestsellers".
    #[serde(default)]
    pub bestseller_rank: Option<u32>,
    #[serde(default)]
    pub related_skus: Vec<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub image_url: Option<String>,
    #[serde(default)]
    pub guide_url: Option<String>,
    #[serde(default)]
    pub replenish_after_days: Option<u32>,
}

/// The products, with a lookup by SKU and the bestseller ranking worked out once, when the
/// catalog is read: a send's recommendations look up every related SKU and walk the ranking,
/// and a store's catalog can run to thousands of products.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Products", into = "Products")]
pub struct Catalog {
    products: Vec<Product>,
    /// Index into `products` by SKU; the first product of a SKU listed twice (which `parse` refuses).
    by_sku: HashMap<String, usize>,
    /// Indexes of the ranked products, best first (ties in file order).
    ranked: Vec<usize>,
}

/// What a catalog is written as (catalog.yaml, the bundled model): its products; the rest is
/// worked out.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Products {
    products: Vec<Product>,
}

impl From<Products> for Catalog {
    fn from(written: Products) -> Catalog {
        Catalog::new(written.products)
    }
}

impl From<Catalog> for Products {
    fn from(catalog: Catalog) -> Products {
        Products { products: catalog.products }
    }
}

impl Catalog {
    pub fn new(products: Vec<Product>) -> Catalog {
        let mut by_sku = HashMap::with_capacity(products.len());
        for (i, product) in products.iter().enumerate() {
            by_sku.entry(product.sku.clone()).or_insert(i);
        }
        let mut ranked: Vec<usize> = (0..products.len()).filter(|&i| products[i].bestseller_rank.is_some()).collect();
        ranked.sort_by_key(|&i| products[i].bestseller_rank);
        Catalog { products, by_sku, ranked }
    }

    pub fn parse(text: &str) -> Result<Catalog, FlowError> {
        let file = "catalog.yaml";
        let catalog: Catalog = read::<Products>(file, text)?.into();
        let mut listed: HashMap<&str, usize> = HashMap::with_capacity(catalog.products.len());
        for product in &catalog.products {
            *listed.entry(product.sku.as_str()).or_default() += 1;
        }
        for (i, p) in catalog.products.iter().enumerate() {
            let err = |m: String| FlowError { file: file.into(), line: line_of(text, &format!("sku: {}", p.sku)), message: format!("products[{i}] ({}): {m}", p.sku) };
            if listed[p.sku.as_str()] > 1 {
                return Err(err("SKU listed twice".into()));
            }
            if let Some(missing) = p.related_skus.iter().find(|s| catalog.get(s).is_none()) {
                return Err(err(format!("related_skus names {missing:?}, which is not in the catalog")));
            }
            if p.name.is_empty() {
                return Err(err("needs a name in at least one locale".into()));
            }
        }
        Ok(catalog)
    }

    pub fn products(&self) -> &[Product] {
        &self.products
    }

    pub fn get(&self, sku: &str) -> Option<&Product> {
        self.by_sku.get(sku).map(|&i| &self.products[i])
    }

    /// Ranked products, best first.
    pub fn bestsellers(&self) -> impl Iterator<Item = &Product> + '_ {
        self.ranked.iter().map(|&i| &self.products[i])
    }
}

/// The catalog as a flow set holds it: one copy the engine and the renderer share, which the
/// Lambdas read from their bundled model only when a send first recommends something. Most
/// invocations never do, and a store's catalog can run to thousands of products, each a dozen
/// strings to read back at every cold start (BENCHMARKS.md, cold start, item 57).
#[derive(Clone)]
pub struct SharedCatalog {
    cell: Arc<OnceLock<Catalog>>,
    /// Reads it when first needed; never called when the cell starts full.
    read: fn() -> Catalog,
}

impl SharedCatalog {
    pub fn new(catalog: Catalog) -> SharedCatalog {
        SharedCatalog { cell: Arc::new(OnceLock::from(catalog)), read: Catalog::default }
    }

    /// Calls `read` the first time the catalog is used, once for all the clones.
    pub fn read_on_first_use(read: fn() -> Catalog) -> SharedCatalog {
        SharedCatalog { cell: Arc::new(OnceLock::new()), read }
    }

    /// Whether it has been read yet (it always has, when made by `new`).
    pub fn is_read(&self) -> bool {
        self.cell.get().is_some()
    }
}

impl Deref for SharedCatalog {
    type Target = Catalog;
    fn deref(&self) -> &Catalog {
        self.cell.get_or_init(self.read)
    }
}

impl PartialEq for SharedCatalog {
    fn eq(&self, other: &SharedCatalog) -> bool {
        **self == **other
    }
}

impl fmt::Debug for SharedCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cell.get() {
            Some(catalog) => catalog.fmt(f),
            None => f.write_str("SharedCatalog(not read yet)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog_with_prices(prices: &[&str]) -> String {
        let products: Vec<String> = prices
            .iter()
            .enumerate()
            .map(|(i, price)| format!("  - sku: P{i}\n    name: {{ja: 品{i}}}\n    price: {price}\n    currency: JPY\n    category: beans\n"))
            .collect();
        format!("products:\n{}", products.concat())
    }

    #[test]
    fn prices_read_the_same_from_yaml_and_from_the_bundled_model() {
        let yaml = catalog_with_prices(&["1800", "19.99", "\"12.50\"", "0.1"]);
        let from_yaml = Catalog::parse(&yaml).unwrap();
        let expected: Vec<Decimal> = ["1800", "19.99", "12.50", "0.1"].iter().map(|p| p.parse().unwrap()).collect();
        assert_eq!(from_yaml.products.iter().map(|p| p.price).collect::<Vec<_>>(), expected);
        // How build.rs embeds it for the Lambdas (`flow::BundledModel`).
        let bytes = postcard::to_allocvec(&from_yaml).unwrap();
        assert_eq!(postcard::from_bytes::<Catalog>(&bytes).unwrap(), from_yaml);
    }

    #[test]
    fn a_price_that_is_not_an_amount_is_named() {
        let error = Catalog::parse(&catalog_with_prices(&["cheap"])).unwrap_err();
        assert!(error.to_string().contains("\"cheap\" is not an amount"), "{error}");
    }

    #[test]
    fn a_sku_listed_twice_is_named_at_its_first_listing() {
        let yaml = catalog_with_prices(&["1", "2", "3"]).replace("sku: P2", "sku: P0");
        let error = Catalog::parse(&yaml).unwrap_err();
        assert_eq!(error.to_string(), "catalog.yaml:2: products[0] (P0): SKU listed twice");
    }

    fn product(sku: &str, rank: Option<u32>) -> Product {
        Product {
            sku: sku.to_owned(),
            name: BTreeMap::from([("ja".to_owned(), format!("{sku} {rank:?}"))]),
            price: Decimal::ONE,
            currency: "JPY".into(),
            category: "beans".into(),
            bestseller_rank: rank,
            related_skus: Vec::new(),
            url: None,
            image_url: None,
            guide_url: None,
            replenish_after_days: None,
        }
    }

    proptest::proptest! {
        /// The index answers as a search of the list would: a SKU's first product, and the
        /// ranked products by rank, ties in file order; and it is rebuilt when read back.
        #[test]
        fn the_index_answers_as_the_list_does(listed in proptest::collection::vec((0u8..12, proptest::option::of(0u32..5)), 0..30)) {
            let products: Vec<Product> = listed.iter().map(|(sku, rank)| product(&format!("S{sku}"), *rank)).collect();
            let catalog = Catalog::new(products.clone());
            for sku in (0u8..13).map(|n| format!("S{n}")) {
                proptest::prop_assert_eq!(catalog.get(&sku), products.iter().find(|p| p.sku == sku));
            }
            let mut ranked: Vec<&Product> = products.iter().filter(|p| p.bestseller_rank.is_some()).collect();
            ranked.sort_by_key(|p| p.bestseller_rank);
            proptest::prop_assert_eq!(catalog.bestsellers().collect::<Vec<_>>(), ranked);
            let read_back: Catalog = postcard::from_bytes(&postcard::to_allocvec(&catalog).unwrap()).unwrap();
            proptest::prop_assert_eq!(read_back, catalog);
        }
    }
}
