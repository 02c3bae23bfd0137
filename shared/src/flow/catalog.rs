//! `flows/catalog.yaml`: the products recommendations are drawn from.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::model::{line_of, yaml_error};
use super::FlowError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub sku: String,
    /// Name per locale (`ja`, `en`).
    pub name: BTreeMap<String, String>,
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

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    pub products: Vec<Product>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    products: Vec<Product>,
}

impl Catalog {
    pub fn parse(text: &str) -> Result<Catalog, FlowError> {
        let file = "catalog.yaml";
        let raw: RawCatalog = serde_yaml::from_str(text).map_err(|e| yaml_error(file, &e))?;
        let catalog = Catalog { products: raw.products };
        for (i, p) in catalog.products.iter().enumerate() {
            let err = |m: String| FlowError { file: file.into(), line: line_of(text, &format!("sku: {}", p.sku)), message: format!("products[{i}] ({}): {m}", p.sku) };
            if catalog.products.iter().filter(|q| q.sku == p.sku).count() > 1 {
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

    pub fn get(&self, sku: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.sku == sku)
    }

    /// Ranked products, best first.
    pub fn bestsellers(&self) -> Vec<&Product> {
        let mut ranked: Vec<&Product> = self.products.iter().filter(|p| p.bestseller_rank.is_some()).collect();
        ranked.sort_by_key(|p| p.bestseller_rank);
        ranked
    }
}
