"""gRPC servicers (thin), auth interceptor and the one error mapping."""
