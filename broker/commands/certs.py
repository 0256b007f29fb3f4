"""`gel certs`: the development PKI (placeholder until the security layer lands)."""

import typer

app = typer.Typer(help="PKI de desarrollo: CA raíz, TSA, pasarela y un certificado por entidad.", no_args_is_help=True)
