(component
  (import "wasi:keyvalue/store@0.1.0" (instance
    (export "bucket" (type (sub resource)))))
)
