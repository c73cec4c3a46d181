DROP TABLE delivery_domains;
