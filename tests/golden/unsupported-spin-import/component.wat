(component
  (import "spin:mysql/mysql@3.0.0" (instance
    (export "connection" (type (sub resource)))))
)
