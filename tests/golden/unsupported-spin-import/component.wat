(component
  (import "spin:postgres/postgres@4.2.0" (instance
    (export "connection" (type (sub resource)))))
)
