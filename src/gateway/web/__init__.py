"""The gateway over HTTP and WebSocket: endpoints, middleware, routes and the lifespan."""
