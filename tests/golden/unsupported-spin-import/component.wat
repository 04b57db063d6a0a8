(component
  (import "spin:sqlite/sqlite@3.1.0" (instance
    (export "connection" (type (sub resource)))))
)
