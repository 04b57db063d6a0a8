(component
  (import "acme:billing/charge@1.0.0" (instance
    (export "charge" (func (param "cents" u64)))))
)
