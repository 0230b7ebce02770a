"""The hello function with a realistic set of dependencies imported at load time."""
import attrs
import click
import dateutil.parser
import jinja2
import markdown_it
import orjson
import pydantic
import requests
import yaml


class Greeting(pydantic.BaseModel):
    text: str


TEMPLATE = jinja2.Template("{{ g.text }}")
_ = (attrs, click, dateutil.parser, markdown_it, orjson, requests, yaml)


def handle(req):
    return TEMPLATE.render(g=Greeting(text="hello from runner"))
