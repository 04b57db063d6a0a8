(component
  (import "wasi:keyvalue/store@0.2.0-draft" (instance
    (export "bucket" (type (sub resource)))))
)
